using static Microsoft.ML.LowRank.Torch.torch;

namespace Microsoft.ML.LowRank.Training;

/// <summary>
/// GaLore (Zhao et al., arXiv 2403.03507) for a <see cref="Trainer"/>: full-parameter training of any model (a plain
/// <see cref="Models.PretrainedModel"/>, no adapter needed) whose attention/MLP weight matrices keep their Adam moments in a
/// rank-r projection of the gradient (<see cref="optim.GaLoreAdamWOptimizer"/>). Use it through
/// <see cref="TrainerOptions.OptimizerFactory"/>:
/// <code>
/// var options = new TrainerOptions { LearningRate = 1e-3, OptimizerFactory = new GaLoreOptions { Rank = 4 }.CreateOptimizerFactory() };
/// using var trainer = new Trainer(model, options);
/// </code>
/// GaLore is not an adapter method (it injects no layer and saves no adapter; what it trains is the model's own weights),
/// so it is not in <see cref="Adapters.AdapterMethods"/>.
/// </summary>
public sealed class GaLoreOptions
{
    /// <summary>The default <see cref="TargetModules"/>: GaLore's scripts project the weights of modules whose name
    /// contains "attn" or "mlp" (LLaMA, GPT-2); "attention", "intermediate" and "output.dense" cover the BERT/RoBERTa names.</summary>
    public static IReadOnlyList<string> DefaultTargetModules { get; } = new[] { "attn", "attention", "mlp", "intermediate", "output.dense" };

    /// <summary>The projection rank r. Default 128 (GaLore's pre-training default; its GLUE fine-tuning runs use 4-8).</summary>
    public int Rank { get; set; } = 128;

    /// <summary>Steps between projector refreshes (the SVD of the current gradient). Default 200.</summary>
    public int UpdateProjGap { get; set; } = 200;

    /// <summary>α scaling the projected-back update. Default 0.25.</summary>
    public double Scale { get; set; } = 0.25;

    /// <summary>The projection side. Default <see cref="optim.GaLoreProjectionType.Std"/>.</summary>
    public optim.GaLoreProjectionType ProjectionType { get; set; } = optim.GaLoreProjectionType.Std;

    /// <summary>AdamW's ε (GaLore's AdamW default; replaces <see cref="TrainerOptions.Epsilon"/>). Default 1e-6.</summary>
    public double Epsilon { get; set; } = 1e-6;

    /// <summary>2-D parameters whose name contains one of these strings are projected; every other parameter (1-D ones,
    /// embeddings, heads) takes plain AdamW steps. Null projects every 2-D parameter. Default
    /// <see cref="DefaultTargetModules"/>.</summary>
    public IReadOnlyList<string>? TargetModules { get; set; } = DefaultTargetModules;

    /// <summary>The settings as a <see cref="optim.GaLoreSettings"/> (validated).</summary>
    /// <returns>The settings.</returns>
    public optim.GaLoreSettings ToSettings()
    {
        var s = new optim.GaLoreSettings(Rank, UpdateProjGap, Scale, ProjectionType);
        s.Validate();
        if (!(Epsilon >= 0) || !double.IsFinite(Epsilon)) throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, "GaLoreOptions.Epsilon must be a finite value >= 0");
        return s;
    }

    /// <summary>Whether a parameter is projected: 2-D, and its name contains a <see cref="TargetModules"/> entry (any
    /// name when that is null; an unnamed parameter only then).</summary>
    /// <param name="name">The dotted parameter name, or null.</param>
    /// <param name="parameter">The parameter.</param>
    /// <returns>True when projected.</returns>
    public bool IsTarget(string? name, nn.Parameter parameter)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        if (parameter.dim() != 2) return false;
        if (TargetModules is null) return true;
        return name is not null && TargetModules.Any(t => name.Contains(t, StringComparison.Ordinal));
    }

    /// <summary>An optimizer factory for <see cref="TrainerOptions.OptimizerFactory"/>: each of the trainer's groups is split
    /// into its projected parameters (one GaLore group) and the others (a plain group), both keeping the group's learning
    /// rate and weight decay; β1, β2 come from the trainer's options, ε from <see cref="Epsilon"/>.</summary>
    /// <returns>The factory.</returns>
    public Func<IReadOnlyList<optim.ParamGroup>, TrainerOptions, optim.Optimizer> CreateOptimizerFactory()
    {
        var settings = ToSettings();
        var epsilon = Epsilon;
        var targets = TargetModules?.ToArray();
        var copy = new GaLoreOptions { TargetModules = targets };
        return (groups, options) =>
        {
            ArgumentNullException.ThrowIfNull(groups);
            ArgumentNullException.ThrowIfNull(options);
            var result = new List<optim.GaLoreParamGroup>();
            foreach (var g in groups)
            {
                var projected = new List<(string? name, nn.Parameter p)>();
                var plain = new List<(string? name, nn.Parameter p)>();
                for (int i = 0; i < g.Parameters.Count; i++)
                {
                    var name = g.ParameterNames?[i];
                    (copy.IsTarget(name, g.Parameters[i]) ? projected : plain).Add((name, g.Parameters[i]));
                }
                if (projected.Count > 0) result.Add(new optim.GaLoreParamGroup(Regroup(g, projected, "_galore"), settings));
                if (plain.Count > 0) result.Add(Regroup(g, plain, ""));
            }
            return optim.GaLoreAdamW(result, options.LearningRate, options.Beta1, options.Beta2, epsilon, options.WeightDecay);
        };
    }

    private static optim.ParamGroup Regroup(optim.ParamGroup g, List<(string? name, nn.Parameter p)> members, string suffix)
        => new(members.Select(m => m.p), lr: g.LearningRate, weight_decay: g.WeightDecay, name: g.Name is null ? null : g.Name + suffix,
            parameter_names: g.ParameterNames is null ? null : members.Select(m => m.name!));
}
